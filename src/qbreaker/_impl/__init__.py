"""The library's internals between the leaves and the public modules.

Floors, bottom up, imports only going down (``tests/packaging/test_layers.py``):
2 ``events``, ``probes``, ``segment_format``, ``segment``; 3 ``methods``,
``wrappers``; 4 ``twin`` (and the compiled ``qbreaker._core_c``);
5 ``select``; 6 ``group``, ``shared_scan`` (and ``qbreaker.shared``).
"""
