"""Replenishment that plans itself: demand and lead-time history, reorder points, drafts."""
