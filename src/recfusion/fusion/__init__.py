"""Candidate sources and fusion methods (weighted, voting, stacking, cascade)."""
