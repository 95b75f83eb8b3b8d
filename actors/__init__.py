"""The Ray side: one actor per event, and the front end's gateway to them."""
