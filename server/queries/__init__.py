"""The read side the API serves: bounded queries and the views they return."""
