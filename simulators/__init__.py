"""HTTPS stand-ins for Microsoft Entra ID + Graph and for the Yeastar PBX (demo and tests)."""
