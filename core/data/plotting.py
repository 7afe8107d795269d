"""Matplotlib for PNG figures, headless: every figure Fjord writes is drawn through
:func:`pyplot`, which selects the Agg backend before pyplot is imported (no display needed)."""


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
