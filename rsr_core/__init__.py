"""RSR Explorer engine: score teacher reasoning trajectories under a student with the Rank-Surprisal Ratio.

No Streamlit here (except `rsr_core.ui`, the app's reusable widgets). See README.md for the conventions.
"""
__version__ = "0.1.0"
