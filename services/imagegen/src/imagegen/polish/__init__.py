"""Prompt polishers behind one interface: `await polisher.polish(prompt) -> str`.

`create_polisher(kind, options)` builds one from configuration; failures are the same
`providers.RenderError` classes the image providers raise.
"""

from imagegen.polish.base import Polisher
from imagegen.polish.factory import POLISHER_KINDS, create_polisher

__all__ = ["POLISHER_KINDS", "Polisher", "create_polisher"]
