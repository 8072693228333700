"""seq2seq: attention-based recurrent sequence-to-sequence models."""

from __future__ import annotations

__version__ = "0.1.0"

# The run-bundle format. Bump it when a run dir written by this version cannot be read by the
# previous one (new required file, renamed key, changed tensor layout); readers refuse newer
# formats.
BUNDLE_FORMAT = 1

__all__ = ["BUNDLE_FORMAT", "__version__"]
