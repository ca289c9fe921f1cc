# Sourced by check-cuda.sh and check-libtorch.sh: torch_venv VENV VERSION makes VENV (a Python venv) hold
# pip's torch==VERSION (PyPI; PIP_CONFIG_FILE=/dev/null lets pip take releases a machine-wide constraint
# file would refuse) and exports LIBTORCH as its torch folder.
torch_venv() {
  local venv=$1 want=$2 have
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  have=$("$venv/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
  [ "${have%%+*}" = "$want" ] || PIP_CONFIG_FILE=/dev/null "$venv/bin/pip" install -q "torch==$want"
  LIBTORCH=$("$venv/bin/python" -c "import torch, os; print(os.path.dirname(torch.__file__))")
  export LIBTORCH
}
