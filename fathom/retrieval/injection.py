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
unflagged; ``tests/unit/retrieval/test_injection_flags.py`` measures the rate on the 5,183
SciFact abstracts (scientific prose) and keeps it under 0.5 %.

Text is matched after normalisation, so the usual disguises read as plain
words: NFKD compatibility folding (full-width and styled letters), every
format character, combining mark and invisible filler removed (``ig\\u200bnore``,
``i\\u0301gnore``, Hangul fillers), words hyphenated across a line break
joined, casefolding; and a second view through the Unicode confusables
skeleton (TR39 data from the ``confusable-homoglyphs`` package), so Cyrillic
or Greek look-alike letters inside Latin words read as Latin. ASCII smuggled in
Unicode tag characters is decoded and scanned too. The patterns cover the
classic phrasing, its paraphrases ("pay no attention to the previous
instructions", "your earlier instructions are void"), eight other languages
and markdown or HTML images whose URL carries data out. Each pattern runs
only when one of its trigger substrings occurs, so a scan costs about 0.1 ms
per 1,500-character ASCII chunk: cheap enough for every field of every answer
(:func:`scan_fields`: chunk text and every metadata string the answer returns).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

#: The flag a chunk carries when any family matched (public API: add flags, never rename).
PROMPT_INJECTION = "prompt_injection"
#: ``flag_details`` key listing the fields an injection was found in (``text``, ``metadata.title``, ...).
PROMPT_INJECTION_FIELDS = "prompt_injection_fields"

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


# family -> rules (matched against each normalised view of the text, see _views)
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
        # Paraphrases of the classic phrasing.
        _Rule(("no attention", "no heed", "no mind"),
              rf"\bpay\s+no\s+(?:attention|heed|mind)\s+to\s+{_ALL}(?:{_BEFORE}\s+)?(?:\w+\s+)?{_TARGET}"),
        _Rule(("aside", "away"),
              rf"\b(?:set|put|cast|throw|toss)\s+(?:aside|away)\s+(?:(?:everything|anything|all)\s+(?:that\s+)?you\s+"
              rf"(?:were|have\s+been|had\s+been)\s+(?:told|instructed|given|taught)|{_ALL}(?:{_BEFORE}\s+)?{_TARGET})"),
        _Rule(("void", "cancel", "revoked", "obsolete", "invalid", "overridden", "superseded", "no longer apply",
               "do not apply", "don't apply"),
              rf"\b(?:your\s+(?:{_BEFORE}\s+)?{_TARGET}|(?:above|previous|prior|preceding|earlier|system|original)\s+"
              rf"(?:instructions|prompts?)|(?:instructions|prompts?)\s+(?:above|given\s+(?:above|before|earlier)))\s+(?:are|is|were)?\s*(?:now\s+)?(?:void|cancell?ed|revoked|obsolete|"
              rf"invalid|overridden|superseded|no\s+longer\s+apply|do\s+not\s+apply|don't\s+apply)\b"),
        _Rule(("stop following", "stop obeying"),
              r"\bstop\s+(?:following|obeying)\s+(?:your|the\s+system'?s?)\s+(?:\w+\s+)?"
              r"(?:instructions|guidelines|rules|programming|prompt|directives)\b"),
        _Rule(("overrid", "overrul"),
              r"\b(?:override|overrule)\s+(?:your|the\s+(?:model|assistant|ai)'?s?)\s+(?:safety\s+|content\s+|system\s+)?"
              r"(?:rules|guidelines|instructions|restrictions|programming|filters|prompt|policies)\b"),
        _Rule(("not heed", "not follow", "not obey", "not listen"),
              rf"\bdo\s+not\s+(?:heed|follow|obey|listen\s+to)\s+(?:your|any)\s+(?:{_BEFORE}\s+)?"
              r"(?:instructions|directives|rules|guidelines|prompt|programming)\b"),
        _Rule(("abandon your", "discard your", "drop your", "ditch your", "forget your", "away your"),
              r"\b(?:abandon|discard|drop|ditch|forget|throw\s+away)\s+your\s+(?:original\s+|initial\s+|previous\s+|"
              r"prior\s+)?(?:programming|training|guidelines|instructions|rules|directives|prompt)\b"),
        _Rule(("whatever you",),
              r"\bwhatever\s+you\s+(?:were|have\s+been|had\s+been)\s+(?:told|instructed|asked)\b[^.\n]{0,30}?,?\s*"
              r"(?:ignore|disregard|forget)\s+(?:it|that|them|all\s+of\s+it)\b"),
        # Other languages (matched after accents are folded away: "precedentes", "instrucoes").
        _Rule(("ignor", "oubli", "tiens pas compte", "tenez pas compte"),
              r"\b(?:ignore[zr]?|oublie[zr]?|ne\s+tien(?:s|ez)\s+pas\s+compte\s+de)\s+(?:toutes\s+|tous\s+)?"
              r"(?:les|vos|tes|ces)\s+(?:instructions|consignes|directives|regles|indications)\s+"
              r"(?:precedentes|anterieures|ci-dessus|d'avant|initiales|du\s+systeme|donnees)"),
        _Rule(("ignorier", "vergiss", "vergessen", "missacht"),
              r"\b(?:ignoriere|ignorieren\s+sie|vergiss|vergessen\s+sie|missachte)\s+(?:alle\s+|die\s+)?"
              r"(?:vorherigen|bisherigen|vorigen|obigen|fruheren|ursprunglichen|vorangegangenen)\s+"
              r"(?:anweisungen|instruktionen|befehle|regeln|vorgaben)"),
        _Rule(("ignor", "olvid"),
              r"\b(?:ignora|ignore|ignoren|olvida|olvide|olviden)\s+(?:todas\s+)?(?:las|tus|sus)\s+"
              r"(?:instrucciones|indicaciones|ordenes|reglas)\s+(?:anteriores|previas|de\s+arriba|del\s+sistema|iniciales)"),
        _Rule(("ignor", "dimentic"),
              r"\b(?:ignora|ignorate|dimentica|dimenticate)\s+(?:tutte\s+)?le\s+(?:istruzioni|indicazioni|regole)\s+"
              r"(?:precedenti|sopra|iniziali|del\s+sistema)"),
        _Rule(("ignor", "esquec"),
              r"\b(?:ignore|ignora|esqueca|esquece)\s+(?:todas\s+)?as\s+(?:instrucoes|regras|orientacoes)\s+"
              r"(?:anteriores|acima|previas|iniciais)"),
        _Rule(("negeer", "vergeet"),
              r"\b(?:negeer|vergeet)\s+(?:alle\s+)?(?:de\s+|je\s+)?(?:vorige|eerdere|voorgaande|bovenstaande)\s+"
              r"(?:instructies|opdrachten|regels)"),
        _Rule(("ignoruj", "zapomnij"),
              r"\b(?:zignoruj|ignoruj|zapomnij)\s+(?:o\s+)?(?:wszystkie\s+|wszystkich\s+)?(?:poprzednie|poprzednich|"
              r"wczesniejsze|wczesniejszych)\s+(?:instrukcje|instrukcjach|polecenia|poleceniach)"),
        _Rule(("игнорир", "забуд"),
              r"(?:игнорируи(?:те)?|проигнорируи(?:те)?|забудь(?:те)?)\s+(?:все\s+)?(?:предыдущие|прежние|"
              r"предшествующие|вышеуказанные)?\s*(?:инструкции|указания|команды|правила)"),
        _Rule(("忽略", "无视", "忘记", "忘掉", "不要理会"),
              r"(?:忽略|无视|忘记|忘掉|不要理会)(?:掉)?(?:之前|以上|前面|先前|上述|所有|全部)(?:的)?(?:所有|全部)?(?:的)?"
              r"(?:指令|指示|说明|提示|规则|命令)"),
        _Rule(("無視", "忘れ"),
              r"(?:以前|前|上記|これまて)の(?:指示|命令|指令|プロンプト)(?:を|は)(?:すへて|全て)?(?:無視|忘れ)"),
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
        _Rule(("point forward", "point on", "here on"),
              r"\bfrom\s+(?:this\s+point|here)\s+(?:forward|on|onwards?)\s*,?\s+you\s+(?:are|will|must|shall|should)\b"),
        _Rule(("act as",),
              rf"\bact\s+as\s+(?:a|an)\s+(?:{_AI}|model)\s+(?:with\s+no|without)\s+(?:any\s+)?(?:content\s+polic(?:y|ies)|"
              r"restrictions|rules|filters|guidelines|limits|censorship)\b"),
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
        _Rule(("freed", "liberated", "released", "unshackled"),
              r"\byou\s+(?:have\s+been|are\s+now|are|were)\s+(?:freed|liberated|released|unshackled)\s+from\s+"
              r"(?:your|all|any)\s+(?:\w+\s+)?(?:rules|restrictions|guidelines|programming|constraints|limits|filters)\b"),
    ),
    # Talking about / extracting the model's own instructions.
    "system_prompt": (
        _Rule(("system prompt", "system  prompt", "system\nprompt"), r"\bsystem\s+prompt\b"),
        _Rule(("prompt", "instructions"),
              r"\b(?:reveal|print|show|repeat|output|display|leak|disclose|dump|tell\s+me)\s+(?:me\s+)?(?:all\s+)?"
              r"(?:your|the)\s+(?:hidden\s+|secret\s+|initial\s+|original\s+|full\s+)?(?:system\s+)?(?:prompt|instructions)\b"),
        _Rule(("your initial", "your original", "your hidden", "your secret", "your system", "your full"),
              r"\b(?:reveal|print|show|repeat|output|display|leak|disclose|dump|quote|copy|including)\b[^\n]{0,60}?"
              r"\byour\s+(?:hidden|secret|initial|original|full|system)\s+(?:prompt|instructions)\b"),
        _Rule(("you were given", "you have been given", "you were told"),
              r"\b(?:what|tell\s+me|quote|repeat|print|show|list)\b[^.?!\n]{0,40}?\binstructions\s+(?:that\s+)?you\s+"
              r"(?:were|have\s+been)\s+(?:given|told)\b"),
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
        _Rule(("reading this", "processing this", "summarizing this", "summarising this", "parsing this"),
              rf"\b{_AI}s?(?:\s+models?)?\s*(?:reading|processing|summari[sz]ing|parsing)\s+this\b"),
        _Rule(("instructions for", "instruction for", "instructions to", "instruction to"),
              r"\binstructions?\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:large\s+)?(?:language\s+models?|llms?|ai\s+models?)\b"),
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
        # An image (markdown or HTML) or link whose query carries a placeholder, an empty value or a payload name:
        # rendering it sends whatever the model fills in to that host. Badges (?branch=main), versions (?v=3) pass.
        _Rule(("](", "<img"),
              r"(?:!?\[[^\]\n]{0,200}\]\(|<img\b[^>]*\bsrc\s*=\s*[\"']?)\s*https?://[^)\s\"'>]*\?[^)\s\"'>]*="
              r"(?:[)\s\"'>]|\{|\$|%7b|<|\[|%3c|%5b|[a-z]+_[a-z_]+\b)"),
        _Rule(("![",),
              r"!\[[^\]\n]{0,200}\]\(\s*https?://[^)\s]*\?(?:[^)\s]*&)?(?:data|d|q|c|m|msg|message|payload|content|text|"
              r"history|conversation|chat|secrets?|key|token|info|prompt|summary|leak|exfil|input|user)="),
        _Rule(("url", "link", "image", "http", "query string"),
              r"\b(?:append|add|include|insert|attach|encode)\s+(?:[\w']+\s+){0,5}?(?:conversation|chat|history|message|"
              r"messages|question|answer|summary|api\s+keys?|password|secrets?|credentials|tokens?)\b[^\n]{0,60}?"
              r"\b(?:to|in|into|as)\s+(?:this\s+|the\s+|a\s+)?(?:url|link|image|query\s+string|https?://)"),
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
# Characters that render as nothing but are not format characters: Hangul fillers (letters), the braille blank,
# the combining grapheme joiner, Khmer inherent vowels, Mongolian variation selectors, variation selectors.
_FILLERS = "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180b\u180c\u180d\u180f" + "".join(
    chr(c) for c in range(0xFE00, 0xFE10))
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}{_FILLERS}]")
_INVISIBLE_RUN_RE = re.compile(f"[{_INVISIBLE}{_FILLERS}]{{3,}}")
_INVISIBLE_MAX = 8            # more than this many in one chunk is smuggling, not typography
# An invisible character between two Latin letters splits a word for the eye of a filter, not of an LLM.
_LATIN = "A-Za-z\u00c0-\u024f"
_IN_WORD_RE = re.compile(f"[{_LATIN}][{_INVISIBLE}{_FILLERS}]+[{_LATIN}]")   # not U+00AD: soft hyphens are typography
# Combining marks on ASCII letters (after NFC, which composes the ordinary accented letters): a stray overline
# in math is normal (x\u0304), a word strewn with them is not.
_MARK_ON_ASCII_RE = re.compile("[A-Za-z][\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_MARKS_MAX = 3
# A word mixing ASCII letters with Cyrillic letters or Greek capitals/omicron that look Latin: "ign\u043ere".
_LOOKALIKE = "\u0400-\u04ff\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03bf"
_MIXED_WORD_RE = re.compile(f"(?:[A-Za-z][{_LOOKALIKE}]|[{_LOOKALIKE}][A-Za-z])")
_LOOKALIKE_RE = re.compile(f"[{_LOOKALIKE}]")
_COMBINING_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SLUG_RE = re.compile(r"[-_]+")
_HYPHEN_BREAK_RE = re.compile(r"(?<=[^\W\d_])-[ \t]*\r?\n[ \t]*(?=[^\W\d_])")
_HYPHEN_NEWLINE_RE = re.compile(r"-[ \t]*\r?\n")     # the cheap test before the join (a literal first)


def _char_class(cps: list[int]) -> re.Pattern[str]:
    ranges, start, prev = [], cps[0], cps[0]
    for cp in cps[1:]:
        if cp != prev + 1:
            ranges.append((start, prev))
            start = cp
        prev = cp
    ranges.append((start, prev))
    return re.compile("[" + "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]+")


@lru_cache(maxsize=1)
def _drop_res() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Code points removed before matching: format (Cf), combining marks (Mn, Me) and the invisible fillers;
    one character class for the BMP and one for the rest (a class mixing both is ~20x slower to scan).

    Built on the first non-ASCII scan (~0.3 s); ``str.translate`` with a dict was 5x slower per text.
    """
    cps = sorted({cp for r in (range(0x80, 0x30000), range(0xE0000, 0xE1000)) for cp in r
                  if unicodedata.category(chr(cp)) in ("Mn", "Me", "Cf")} | {ord(ch) for ch in _FILLERS})
    return _char_class([c for c in cps if c < 0x10000]), _char_class([c for c in cps if c >= 0x10000])


_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


def _strip_invisible(text: str) -> str:
    bmp, astral = _drop_res()
    text = bmp.sub("", text)
    return astral.sub("", text) if _ASTRAL_RE.search(text) else text


@lru_cache(maxsize=1)
def _skeleton() -> tuple[dict[int, str], re.Pattern[str], re.Pattern[str]]:
    """Non-ASCII letters that are confusable with an ASCII letter (Unicode TR39 confusables), mapped to it, and a
    pattern finding runs of them (only those runs are translated: most non-ASCII text has few)."""
    from confusable_homoglyphs.utils import load

    table: dict[int, str] = {}
    for ch, glyphs in load("confusables.json").items():
        if len(ch) != 1 or ch.isascii():
            continue
        latin = next((g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalpha()), None)
        if latin:
            table[ord(ch)] = latin.lower()
    keys = sorted(table)
    return table, _char_class([c for c in keys if c < 0x10000]), _char_class([c for c in keys if c >= 0x10000])
@dataclass(frozen=True, slots=True)
class InjectionScan:
    """The outcome for one text: the pattern families that matched (sorted; empty when clean)."""

    families: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()    # scan_fields: where something matched ("text", "metadata.title", ...)

    @property
    def flagged(self) -> bool:
        return bool(self.families)

    @property
    def flags(self) -> list[str]:
        """The chunk-level flags (``["prompt_injection"]`` or ``[]``)."""
        return [PROMPT_INJECTION] if self.families else []

    @property
    def details(self) -> dict[str, list[str]]:
        """A chunk's ``flag_details``: the families that matched, and (from scan_fields) the fields they were in."""
        if not self.families:
            return {}
        out = {PROMPT_INJECTION: list(self.families)}
        if self.fields:
            out[PROMPT_INJECTION_FIELDS] = list(self.fields)
        return out


FAMILIES: tuple[str, ...] = tuple(sorted([*_FAMILIES, "hidden_unicode"]))


def _views(text: str) -> tuple[str, ...]:
    """What the patterns see: the text normalised, and (for non-ASCII text) its confusables skeleton too.

    ASCII: lowercased, words hyphenated across a line break joined. Otherwise: NFKD (full-width and styled
    letters become plain ones, accents split off), format characters, combining marks and fillers removed
    (``ig\\u200bnore``, ``i\\u0301gnore``), hyphenation joined, casefolded; then the same text with every letter
    that looks like an ASCII letter replaced by it (Cyrillic ``\\u043e`` -> ``o``). Native-script patterns read
    the first view, so Russian text keeps its Cyrillic.
    """
    if text.isascii():
        lowered = text.lower()
        return (_HYPHEN_BREAK_RE.sub("", lowered) if _HYPHEN_NEWLINE_RE.search(lowered) else lowered,)
    plain = _strip_invisible(unicodedata.normalize("NFKD", text)).casefold()
    if _HYPHEN_NEWLINE_RE.search(plain):
        plain = _HYPHEN_BREAK_RE.sub("", plain)
    if plain.isascii():          # accented Latin text, once its marks are gone: nothing looks like anything else
        return (plain,)
    table, bmp, astral = _skeleton()
    skeleton = bmp.sub(lambda m: m.group().translate(table), plain)
    if _ASTRAL_RE.search(skeleton):
        skeleton = astral.sub(lambda m: m.group().translate(table), skeleton)
    return (plain,) if skeleton == plain else (plain, skeleton)


def _matches(folded: str, rules: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]) -> bool:
    return any(any(t in folded for t in triggers) and rx.search(folded) is not None for triggers, rx in rules)


def hidden_unicode(text: str) -> bool:
    """Text hidden from a reader or a filter, not from an LLM: tag characters at all; zero-width, bidi or filler
    characters in a run of three or more, more than eight of them, or one inside a Latin word; combining marks
    strewn over ASCII letters; a word mixing Latin letters with Cyrillic or Greek look-alikes.

    Each check first looks for its characters with a plain character class (a fast scan), so ordinary
    non-ASCII prose pays little.
    """
    if _TAG_CHARS.search(text):
        return True
    if _INVISIBLE_RE.search(text) and (_INVISIBLE_RUN_RE.search(text) or _IN_WORD_RE.search(text)
                                       or len(_INVISIBLE_RE.findall(text)) > _INVISIBLE_MAX):
        return True
    if _LOOKALIKE_RE.search(text) and _MIXED_WORD_RE.search(text):
        return True
    if not _COMBINING_RE.search(text):
        return False
    marks = [m.group() for m in _MARK_ON_ASCII_RE.finditer(unicodedata.normalize("NFC", text))]
    return any(len(m) > 2 for m in marks) or len(marks) > _MARKS_MAX


def decode_tag_characters(text: str) -> str:
    """The ASCII that Unicode tag characters smuggle (U+E0041 -> 'A'); scanned like visible text."""
    return "".join(chr(ord(ch) - 0xE0000) for ch in _TAG_CHARS.findall(text) if 0x20 <= ord(ch) - 0xE0000 < 0x7F)


def scan(text: str) -> InjectionScan:
    """Which injection families ``text`` matches. Never raises; an empty text is clean."""
    if not text:
        return InjectionScan()
    views = _views(text)
    plain = text.isascii()              # most chunks: no invisible characters to look for
    smuggled = "" if plain else decode_tag_characters(text)
    if smuggled:
        views = (*views, *_views(smuggled))
    found = {family for family, rules in _COMPILED.items() if any(_matches(v, rules) for v in views)}
    if not plain and hidden_unicode(text):
        found.add("hidden_unicode")
    return InjectionScan(tuple(sorted(found)))


def _strings(value: object, name: str) -> Iterator[tuple[str, str]]:
    """Every string inside a metadata value (lists and dicts too: tags are ``{key: value}``), with its field name."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k, f"{name}.{k}") if isinstance(k, str) else ()
            yield from _strings(v, f"{name}.{k}")
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        for v in value:
            yield from _strings(v, name)


def scan_fields(text: str, metadata: Mapping[str, object]) -> InjectionScan:
    """Scan everything an answer returns for one chunk: its text and every string in its metadata.

    Apps put titles, file names, section paths and tag values into prompts as readily as chunk text, so an
    attack in any of them flags the chunk. ``fields`` names where something matched (``text``,
    ``metadata.title``, ``metadata.tags.<key>``, ...).
    """
    found: set[str] = set()
    fields: list[str] = []
    for name, value in (("text", text), *_strings(metadata, "metadata")):
        result = scan(value)
        if not result.flagged and name != "text" and ("-" in value or "_" in value):
            result = scan(_SLUG_RE.sub(" ", value))   # file names and slugs: "ignore-prior-instructions.pdf"
        if result.flagged:
            found.update(result.families)
            if name not in fields:
                fields.append(name)
    return InjectionScan(tuple(sorted(found)), tuple(fields))
