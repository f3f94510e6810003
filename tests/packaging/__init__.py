"""Build, install, import, cimport and the README's examples."""
