"""Prompt-injection and poisoning detector for retrieved chunks: **flag, never drop**.

Retrieved text is handed to an LLM by the calling app, so a document that
carries instructions ("ignore all previous instructions", a fake
``<|im_start|>system`` turn, a request to post the conversation to a URL,
text hidden in invisible Unicode tag characters) can steer that LLM. The
retrieval service cannot know whether the app wants such a chunk: a security
team searching its phishing corpus does, a customer-facing chatbot does not.
So a match never removes a chunk or changes the answer's status; it adds
``"prompt_injection"`` to the chunk's ``flags`` with the pattern *families*
that matched, and the calling app decides (drop, quote as untrusted data,
alert).

The patterns are built for **low false positives on ordinary prose**: each
needs an instruction-override shape (an imperative aimed at the model's
instructions, a role reassignment aimed at an AI, a chat-template token), not
a lone word such as "instructions", "system" or "prompt". "Follow the
manufacturer's instructions" and "the immune system prompted a response" stay
unflagged; ``tests/test_injection_flags.py`` measures the rate on the 5,183
SciFact abstracts (scientific prose) and keeps it under 0.5 %.

Text is matched after casefolding and, for non-ASCII text, NFKC folding and
removal of zero-width and other format characters (so ``ig\\u200bnore`` and
full-width letters still read ``ignore``); ASCII smuggled in Unicode tag
characters is decoded and scanned too. Each pattern runs only when one of its
trigger substrings occurs, so a scan costs about 0.1 ms per 1,500-character
chunk: cheap enough for every chunk of every answer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: The flag a chunk carries when any family matched (public API: add flags, never rename).
PROMPT_INJECTION = "prompt_injection"

_TARGET = r"(?:instructions?|prompts?|rules|directions|directives|context|messages|commands)"
_BEFORE = r"(?:previous|prior|preceding|above|earlier|foregoing|original|initial|system|existing|old|given|former)"
_ALL = r"(?:(?:all|any|every|each|the|your|my|these|those|of)\s+){0,3}"
_AI = (r"(?:ai|a\.i\.|assistant|ai assistant|chat ?bot|llm|large language model|language model|gpt(?:-\d)?|chatgpt"
       r"|claude|gemini|copilot|agent|bot)")


@dataclass(frozen=True, slots=True)
class _Rule:
    """One pattern, tried only when the folded text contains one of its trigger substrings.

    The ``in`` checks run in C and skip almost every ordinary chunk; a leading ``\\b`` alternation makes
    Python's regex engine try every position, which across ~30 patterns cost about 1 ms per SciFact abstract.
    """

    triggers: tuple[str, ...]
    pattern: str


# family -> rules (matched against the folded text, see _fold)
_FAMILIES: dict[str, tuple[_Rule, ...]] = {
    # "Ignore all previous instructions", "disregard the above", "forget everything you were told".
    "override_instructions": (
        _Rule(("ignor", "disregard", "forget", "overr", "bypass", "skip", "drop", "discard", "abandon", "neglect"),
              rf"\b(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|discard|abandon|neglect)\s+{_ALL}"
              rf"(?:{_BEFORE}\s+)(?:\w+\s+)?{_TARGET}"),
        _Rule(("ignore", "disregard", "forget"),
              r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?(?:the\s+|what\s+is\s+)?"
              r"(?:above|before this|prior text|preceding text|said above|written above)\b"),
        _Rule(("forget",),
              r"\bforget\s+(?:everything|all)\s+(?:you\s+(?:were|have been)\s+(?:told|given)|(?:above|before|so far))"),
        _Rule(("not follow", "not obey"), rf"\bdo\s+not\s+(?:follow|obey)\s+(?:your|any)\s+{_BEFORE}\s+{_TARGET}"),
        _Rule(("instruction",), r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?instructions?\s*:"),
        _Rule(("instead",),
              r"\binstead,?\s+(?:you\s+(?:must|will|should)\s+)?(?:respond|reply|answer|output|say)\s+(?:only\s+)?with\b"),
    ),
    # "You are now DAN", "from now on you will act as", "pretend you are an unrestricted AI".
    "role_reassignment": (
        _Rule(("you are now", "you are no longer"),
              rf"\byou\s+are\s+(?:now|no\s+longer)\s+(?:(?:a|an|the|my|in)\s+)?(?:[\w-]+\s+){{0,3}}?"
              rf"(?:{_AI}|dan|persona|character|jailbroken|unrestricted|unfiltered|uncensored|evil|free|bound|mode)\b"),
        _Rule(("now on",), r"\bfrom\s+now\s+on,?\s+you\s+(?:will|must|shall|are\s+going\s+to|should)\s+"
                           r"(?:act|respond|reply|answer|behave|pretend|ignore|only|always|never|be)\b"),
        _Rule(("pretend", "imagine"),
              rf"\b(?:pretend|imagine)\s+(?:that\s+)?you\s+are\s+(?:(?:a|an|the)\s+)?(?:[\w-]+\s+){{0,2}}?"
              rf"(?:{_AI}|unrestricted|unfiltered|uncensored|jailbroken)\b"),
        _Rule(("act as",),
              rf"\bact\s+as\s+(?:a|an)\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue)\s+(?:{_AI}|model)\b"),
        _Rule(("play as", "roleplay"), r"\b(?:role-?play|roleplay)\s+as\s+(?:a|an)\s+(?:unrestricted|unfiltered|uncensored|evil)\b"),
    ),
    # Jailbreak markers.
    "jailbreak": (
        _Rule(("dan mode", "anything now"), r"\bdan\s+mode\b|\bdo\s+anything\s+now\b"),
        _Rule(("developer mode",), r"\bdeveloper\s+mode\s+(?:enabled|activated|on)\b|\benable\s+developer\s+mode\b"),
        _Rule(("jailbr",), r"\bjailbr(?:oken|eak)\s+(?:mode|prompt|enabled|activated)\b"),
        _Rule(("guidelines", "restrictions", "filters", "policies", "guardrails"),
              r"\b(?:without|ignoring|free\s+of|bypass(?:ing)?)\s+(?:any\s+|all\s+|your\s+)?(?:ethical\s+|safety\s+|content\s+)"
              r"(?:guidelines|restrictions|filters|policies|guardrails)\b"),
        _Rule(("ethical", "moral", "safety"),
              r"\bno\s+(?:ethical|moral|safety)\s+(?:guidelines|restrictions|limits|constraints)\s+(?:apply|exist)\b"),
    ),
    # Talking about / extracting the model's own instructions.
    "system_prompt": (
        _Rule(("system prompt", "system  prompt", "system\nprompt"), r"\bsystem\s+prompt\b"),
        _Rule(("prompt", "instructions"),
              r"\b(?:reveal|print|show|repeat|output|display|leak|disclose|dump|tell\s+me)\s+(?:me\s+)?(?:all\s+)?"
              r"(?:your|the)\s+(?:hidden\s+|secret\s+|initial\s+|original\s+|full\s+)?(?:system\s+)?(?:prompt|instructions)\b"),
    ),
    # Chat-template tokens and fake turns: <|im_start|>system, [INST], <<SYS>>, "### Instruction:".
    "chat_role_tags": (
        _Rule(("<|",), r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\s*\|>"),
        _Rule(("inst]", "<<"), r"\[/?inst\]|<<\s*/?sys\s*>>"),
        _Rule(("##",), r"(?:^|\n)\s*#{2,}\s*(?:instruction|instructions|system|system prompt|response)\s*:"),
        _Rule(("<system", "</system", "<assistant", "</assistant"), r"</?(?:system|assistant)(?:[-_]?(?:prompt|message|instructions?))?\s*>"),
        _Rule(("system:", "assistant:", "system :", "assistant :"),
              r"(?:^|\n)\s*(?:system|assistant)\s*:\s*(?:you\s+(?:are|must|will|should)|ignore|disregard)\b"),
    ),
    # Hidden instructions addressed to the model that reads the document.
    "addressed_to_ai": (
        _Rule(("note", "message", "instruction", "attention", "memo", "reminder"),
              rf"\b(?:note|message|instructions?|attention|memo|reminder)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{_AI}s?\b"),
        _Rule(("if you are",), rf"\bif\s+you\s+are\s+(?:a|an)\s+{_AI}\b"),
        _Rule(("hey", "dear ", "attention", "hello"), rf"\b(?:hey|dear|attention|hello)\s*,?\s+{_AI}\b\s*[,:!]"),
        _Rule(("reading this", "processing this", "summarizing this", "summarising this"), rf"\b{_AI}s?\s*(?:reading|processing|summari[sz]ing)\s+this\b"),
        _Rule(("you must", "you should", "you will"),
              rf"\bwhen\s+(?:asked|summari[sz]ing|answering)\b[^.\n]{{0,80}}\byou\s+(?:must|should|will)\s+(?:always\s+)?"
              rf"(?:say|respond|reply|answer|recommend|state|claim|include)\b"),
    ),
    # Requests to reveal secrets or send data out.
    "exfiltration": (
        _Rule(("http", "www.", "@"),
              r"\b(?:send|post|forward|upload|exfiltrate|transmit|leak|e-?mail|submit)\s+(?:\w+\s+){0,6}?"
              r"(?:conversation|chat\s+history|history|secrets?|credentials|api\s+keys?|passwords?|tokens?|user(?:'s)?\s+data|"
              r"personal\s+data|session|cookies?|the\s+(?:above|previous)|system\s+prompt)\b[^\n]{0,80}?"
              r"(?:to|at|via)\s+(?:https?://|www\.|\S+@\S+\.\w+)"),
        # "share a secret" (Shamir) and "reveal the secrets of ageing" are prose: no "share", no bare "secret(s)".
        _Rule(("key", "password", "credential", "token"),
              r"\b(?:reveal|disclose|leak|dump|exfiltrate)\s+(?:\w+\s+){0,3}?(?:api\s+keys?|passwords?|credentials|"
              r"access\s+tokens?|auth(?:entication)?\s+tokens?|secret\s+keys?|private\s+keys?)\b"),
        _Rule(("![",), r"!\[[^\]]*\]\(\s*https?://[^)\s]*\?[^)\s]*=(?:\{|\$|%7b|<)"),
    ),
}

# Compiled once; the text is casefolded before matching, so no IGNORECASE (which slows every pattern down).
_COMPILED: dict[str, tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]] = {
    family: tuple((rule.triggers, re.compile(rule.pattern, re.MULTILINE)) for rule in rules)
    for family, rules in _FAMILIES.items()
}

# Unicode "tag" characters (U+E0000-U+E007F): invisible, and a known way to smuggle ASCII to an LLM.
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]")
# Zero-width and bidi control characters. Single ones occur in real text (ZWJ in emoji, ZWNJ in Persian and
# Indic scripts, an RLM beside Hebrew), so only runs or unusual amounts count as smuggling.
_INVISIBLE = ("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\u180e\ufeff"   # zero-width, marks
              "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")                       # bidi embeddings
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
_INVISIBLE_RUN_RE = re.compile(f"[{_INVISIBLE}]{{3,}}")
_INVISIBLE_MAX = 8            # more than this many in one chunk is smuggling, not typography
_STRIP = str.maketrans("", "", _INVISIBLE + "\u00ad")


@dataclass(frozen=True, slots=True)
class InjectionScan:
    """The outcome for one text: the pattern families that matched (sorted; empty when clean)."""

    families: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.families)

    @property
    def flags(self) -> list[str]:
        """The chunk-level flags (``["prompt_injection"]`` or ``[]``)."""
        return [PROMPT_INJECTION] if self.families else []


FAMILIES: tuple[str, ...] = tuple(sorted([*_FAMILIES, "hidden_unicode"]))


def _fold(text: str) -> str:
    """What the patterns see: casefolded, and for non-ASCII text NFKC-folded (full-width and styled letters
    become ASCII) without invisible characters (so ``ig\\u200bnore`` reads ``ignore``)."""
    if text.isascii():
        return text.lower()
    text = _TAG_CHARS.sub("", unicodedata.normalize("NFKC", text)).translate(_STRIP)
    return text.casefold()


def _matches(folded: str, rules: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]) -> bool:
    return any(any(t in folded for t in triggers) and rx.search(folded) is not None for triggers, rx in rules)


def hidden_unicode(text: str) -> bool:
    """Tag characters at all, or zero-width/bidi controls in a run of three or more, or more than eight."""
    if _TAG_CHARS.search(text) or _INVISIBLE_RUN_RE.search(text):
        return True
    return len(_INVISIBLE_RE.findall(text)) > _INVISIBLE_MAX


def decode_tag_characters(text: str) -> str:
    """The ASCII that Unicode tag characters smuggle (U+E0041 -> 'A'); scanned like visible text."""
    return "".join(chr(ord(ch) - 0xE0000) for ch in _TAG_CHARS.findall(text) if 0x20 <= ord(ch) - 0xE0000 < 0x7F)


def scan(text: str) -> InjectionScan:
    """Which injection families ``text`` matches. Never raises; an empty text is clean."""
    if not text:
        return InjectionScan()
    folded = _fold(text)
    plain = text.isascii()              # most chunks: no invisible characters to look for
    smuggled = "" if plain else decode_tag_characters(text)
    if smuggled:
        folded += "\n" + _fold(smuggled)
    found = {family for family, rules in _COMPILED.items() if _matches(folded, rules)}
    if not plain and hidden_unicode(text):
        found.add("hidden_unicode")
    return InjectionScan(tuple(sorted(found)))
