"""The dashboard's pages, one module each; ``page()`` draws it (st.navigation calls it)."""
