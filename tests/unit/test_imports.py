import subprocess
import sys


def test_serving_path_does_not_import_torch():
    code = (
        "import sys, streamae.cli, streamae.daemon, streamae.scoring, streamae.broker, "
        "streamae.simulate, streamae.offline; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
