"""The Streamlit UI. `rlhf serve` runs app/ui/main.py; pages live in app/ui/pages/."""
