"""Import torchvision without torch._dynamo: the one-query start-up of the CLI.

``import torchvision`` imports ``torchvision.ops.roi_align``, which imports
``torch._dynamo.utils`` (dynamo, sympy, the FX symbolic shapes) for one helper it calls
only inside ``roi_align`` when compiling. On the shared 2-core machine (loaded; torch
2.11, torchvision 0.26) ``/usr/bin/time python -c "import torch, torchvision.models"``
took 7.4-8.1 s of user CPU and importing ``sonicsearch.model.backbones`` this way 4.5-5.1 s
(about 4.2 for torch alone): that is in every process that loads a model, such as a
one-query ``sonicsearch query``. :func:`import_torchvision` imports torchvision with that one helper
standing in: it imports the real one (and dynamo) the first time roi_align calls it, and
the placeholder modules are removed at once, so ``torch._dynamo`` and ``torch.compile``
import and work as usual afterwards. When dynamo is already loaded, nothing is replaced.
"""

from __future__ import annotations

import sys
import types

_DYNAMO, _UTILS = "torch._dynamo", "torch._dynamo.utils"


def is_compile_supported(device_type: str) -> bool:
    """torch._dynamo.utils.is_compile_supported, imported on first use."""
    from torch._dynamo.utils import is_compile_supported as real

    return real(device_type)


def import_torchvision() -> types.ModuleType:
    """``import torchvision`` without importing torch._dynamo (see the module docstring)."""
    if "torchvision" in sys.modules or _DYNAMO in sys.modules:
        import torchvision

        return torchvision
    dynamo, utils = types.ModuleType(_DYNAMO), types.ModuleType(_UTILS)
    dynamo.__path__ = []  # a package, so that ``torch._dynamo.utils`` resolves to ``utils``
    dynamo.utils = utils
    utils.is_compile_supported = is_compile_supported
    sys.modules[_DYNAMO], sys.modules[_UTILS] = dynamo, utils
    try:
        import torchvision
    finally:
        for name, stub in ((_UTILS, utils), (_DYNAMO, dynamo)):
            if sys.modules.get(name) is stub:
                del sys.modules[name]
        import torch

        if torch.__dict__.get("_dynamo") is dynamo:  # an attribute the import may have set
            del torch._dynamo
    return torchvision
