"""The constructor's settings: one validated Config, one parameter list.

The compiled ``__init__`` passes its arguments to ``methods.init`` by
position, the twin's by name: both must list the same parameters, in the
same order, with the same defaults as ``make_config``.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import uuid

import pytest

from qbreaker import shared
from qbreaker._impl import methods, segment_format
from qbreaker._impl import twin as _core_py
from qbreaker.shared import SharedStateError


def _defaults(signature: inspect.Signature) -> dict[str, object]:
    return {
        name: p.default for name, p in signature.parameters.items() if name != "self"
    }


def test_make_config_lists_the_twins_parameters_in_order() -> None:
    twin = _defaults(inspect.signature(_core_py.CircuitBreaker.__init__))
    assert tuple(twin) == methods.PARAMETERS
    assert twin == _defaults(inspect.signature(methods.make_config))


@pytest.mark.c_extension
def test_the_compiled_signature_lists_the_same_parameters_in_order() -> None:
    from qbreaker import _core_c

    # embedsignature=True: the class docstring starts with the signature.
    first_line = (_core_c.CircuitBreaker.__doc__ or "").splitlines()[0]
    call = ast.parse(first_line.replace(", *,", ","), mode="eval").body
    assert isinstance(call, ast.Call)
    compiled = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert tuple(compiled) == methods.PARAMETERS
    assert compiled == _defaults(inspect.signature(methods.make_config))


def test_a_config_is_validated_and_immutable() -> None:
    config = methods.make_config(max_failures=2, name="db", shared_policy="adopt")
    assert (config.policy.max_failures, config.name, config.adopt) == (2, "db", True)
    with pytest.raises(AttributeError):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"shared_policy must be 'match' .* got 'x'"):
        methods.make_config(shared_policy="x")
    with pytest.raises(TypeError, match="on_state_change must be callable or None"):
        methods.make_config(on_state_change=5)


def test_the_twin_refuses_shared_before_touching_the_directory() -> None:
    name = f"twin-{uuid.uuid4().hex[:12]}"
    with pytest.raises(SharedStateError, match="pure-Python core cannot share"):
        _core_py.CircuitBreaker(shared=name)
    assert not os.path.exists(segment_format.path_of(name))
    # Its other arguments are still checked first, as the compiled core's are.
    with pytest.raises(ValueError, match="max_failures"):
        _core_py.CircuitBreaker(max_failures=0, shared=name)


def test_segments_work_without_importing_the_compiled_core() -> None:
    # Pure-Python mode: the segment module never imports the compiled core
    # (it sits below it) and says why it cannot publish a segment.
    name = f"pure-{uuid.uuid4().hex[:12]}"
    probe = (
        "import sys\n"
        "from qbreaker._impl import segment\n"
        "from qbreaker._policy import DEFAULT_POLICY\n"
        "try:\n"
        f"    segment.open_segment({name!r}, DEFAULT_POLICY, False)\n"
        "except segment.SharedStateError as exc:\n"
        "    print(type(exc).__name__, 'compiled core' in str(exc))\n"
        "print('qbreaker._core_c' in sys.modules)\n"
    )
    env = {**os.environ, "QBREAKER_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["SharedStateError", "True", "False"]
    assert not shared.exists(name)  # refused before making a file
