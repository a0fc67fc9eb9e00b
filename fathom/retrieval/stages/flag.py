"""Stage ``flag``: prompt-injection flags on the chunks that go out (``fathom.retrieval.injection``).

Here rather than in the HTTP route so that benchmarks, the reindex gate and apps see the same results.
Flagged, never dropped: whether injected-looking text is wanted is the calling app's decision.
"""

from __future__ import annotations

from fathom.retrieval.injection import PROMPT_INJECTION, scan_fields
from fathom.retrieval.query_pipeline import RetrievalState, Stage
from fathom.retrieval.store.contract import returned_metadata


class FlagInjection(Stage):
    name = timing = "flag"
    finishing = True
    reads = frozenset({"decision"})

    def run(self, state: RetrievalState) -> None:
        assert state.decision is not None
        for c in state.decision.kept:
            # Every field the chunk is returned with: apps put titles, file names and tags into prompts too.
            found = scan_fields(c.hit.text, returned_metadata(c.hit.payload))
            if found.flagged:
                c.flags[PROMPT_INJECTION] = list(found.families)
                c.flag_fields[PROMPT_INJECTION] = list(found.fields)
