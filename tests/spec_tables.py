"""The published tables of SPEC §2, typed out by hand once for every test that needs them.

They are the independent reference: tests compare the library with these, never the library
with itself.
"""

# Second-order assessment rules: columns "C vs G", "D vs G", "C vs B", "D vs B" (the donor's
# reputation is ignored).
SECOND_ORDER = {
    "image_scoring": "GBGB",
    "simple_standing": "GBGG",
    "stern_judging": "GBBG",
    "shunning": "GBBB",
}

# The leading eight (Ohtsuki & Iwasa 2004): d(x, y, a) in the column order below, then the
# action rule's p(B, B); for all eight p(G, G) = C, p(G, B) = D, p(B, G) = C.
COLUMNS = ("GGC", "GGD", "GBC", "GBD", "BGC", "BGD", "BBC", "BBD")
LEADING_EIGHT = {
    "L1": ("GBGGGBGB", "C"),
    "L2": ("GBBGGBGB", "C"),
    "L3": ("GBGGGBGG", "D"),
    "L4": ("GBGGGBBG", "D"),
    "L5": ("GBBGGBGG", "D"),
    "L6": ("GBBGGBBG", "D"),
    "L7": ("GBGGGBBB", "D"),
    "L8": ("GBBGGBBB", "D"),
}
