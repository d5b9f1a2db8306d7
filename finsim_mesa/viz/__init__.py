"""Visualisation: static matplotlib figures (:mod:`.plots`) and the Solara app (:mod:`.app`)."""
