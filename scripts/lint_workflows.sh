#!/usr/bin/env bash
# The GitHub files checked offline: the workflows against the GitHub-workflow
# schema bundled with check-jsonschema, the issue forms against theirs,
# zizmor's audit (.github/zizmor.yml configures it), and the wheels
# cibuildwheel would build against the README's promise
# (tests/packaging/test_wheel_identifiers.py). The tools come from
# pyproject.toml's "wheels" dependency group, installed into PYTHON's
# environment (default python; Python 3.11 or later).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
"$PYTHON" -m pip install -q --group wheels
SCRIPTS=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
"$PYTHON" -m check_jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
"$PYTHON" -m check_jsonschema --builtin-schema vendor.github-issue-forms .github/ISSUE_TEMPLATE/bug_report.yml
"$PYTHON" -m check_jsonschema --builtin-schema vendor.github-issue-config .github/ISSUE_TEMPLATE/config.yml
"$SCRIPTS/zizmor" --offline .github
"$PYTHON" -m pytest -q -p no:cacheprovider tests/packaging/test_wheel_identifiers.py
