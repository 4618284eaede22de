"""A stand-in for the `google.colab` package that Colab's kernel imports at start-up.

The Colab simulation (tests/colab) puts this folder on the kernel's path and imports it first,
so `"google.colab" in sys.modules` is true there, as in Colab. Only what the course calls exists.
"""
