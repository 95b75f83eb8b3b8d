"""The pure domain: inventory rules and order requests. Standard library only."""
