"""torchvision imported without torch._dynamo (model/tv_import.py): dynamo still imports and
works afterwards, and roi_align's helper answers as the real one."""

from __future__ import annotations

import subprocess
import sys


def test_dynamo_loads_on_demand_after_the_lean_import():
    code = (
        "import sys, torch\n"
        "from sonicsearch.model.tv_import import import_torchvision\n"
        "tv = import_torchvision()\n"
        "assert 'torch._dynamo' not in sys.modules and 'torch._dynamo.utils' not in sys.modules\n"
        "assert 'sympy' not in sys.modules and '_dynamo' not in torch.__dict__\n"
        "ra = sys.modules['torchvision.ops.roi_align']\n"
        "lean = ra.is_compile_supported('cpu')\n"
        "from torch._dynamo.utils import is_compile_supported as real\n"
        "assert lean == real('cpu') and isinstance(torch._dynamo.reset, object)\n"
        "assert type(sys.modules['torch._dynamo']).__name__ == 'module' and "
        "hasattr(sys.modules['torch._dynamo'], 'optimize')\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
