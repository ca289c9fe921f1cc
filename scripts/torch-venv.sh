# Sourced by check-cuda.sh and check-libtorch.sh: torch_venv VENV VERSION makes VENV (a Python venv) hold
# pip's torch==VERSION (PyPI; PIP_CONFIG_FILE=/dev/null lets pip take releases a machine-wide constraint
# file would refuse) and exports LIBTORCH as its torch folder. --no-compile: only the libtorch folder is
# used, so pip skips compiling the package's Python to bytecode (15 of 100 s).
torch_venv() {
  local venv=$1 want=$2 have
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  have=$("$venv/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
  [ "${have%%+*}" = "$want" ] || PIP_CONFIG_FILE=/dev/null "$venv/bin/pip" install -q --no-compile "torch==$want"
  LIBTORCH=$("$venv/bin/python" -c "import torch, os; print(os.path.dirname(torch.__file__))")
  export LIBTORCH
}
