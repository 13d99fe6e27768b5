"""The channels customers talk through: each turns its own updates into engine events and replies back."""
