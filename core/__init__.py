"""Pieces shared by every layer: the error tree."""
