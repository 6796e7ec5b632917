"""The embedded default datasets, installed as the package ``attnapps.embedded`` (this folder is mapped
to it in ``pyproject.toml``; its files are package data). Read them through
:func:`attnapps.data.files.embedded`; ``README.md`` here gives each dataset's source and licence."""
