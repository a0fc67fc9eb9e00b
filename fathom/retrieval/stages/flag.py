"""Stage ``flag``: prompt-injection flags on the chunks that go out (``fathom.retrieval.injection``).

Here rather than in the HTTP route so that benchmarks, the reindex gate and apps see the same results.
Flagged, never dropped: whether injected-looking text is wanted is the calling app's decision.
"""

from __future__ import annotations

from fathom.retrieval.injection import PROMPT_INJECTION, scan
from fathom.retrieval.query_pipeline import RetrievalState, Stage


class FlagInjection(Stage):
    name = timing = "flag"
    finishing = True
    reads = frozenset({"decision"})

    def run(self, state: RetrievalState) -> None:
        assert state.decision is not None
        for c in state.decision.kept:
            found = scan(c.hit.text)
            if found.flagged:
                c.flags[PROMPT_INJECTION] = list(found.families)
