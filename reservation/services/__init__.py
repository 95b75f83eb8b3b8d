"""Use cases: what the HTTP routes ask for, in terms of the store and the actors."""
