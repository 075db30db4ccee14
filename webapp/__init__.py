"""The web app (`python web.py`): the PBX administrator's pages reached by signed links, the operator
console, and the codec endpoint for the Temporal UI."""
