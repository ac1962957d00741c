"""fastloop's version: the one place it is written.

setup.py reads this file as text (the package cannot be imported before
its C extension is built); fastloop.__version__ and
`python -m fastloop --version` import it.
"""
__version__ = "0.1.0"
