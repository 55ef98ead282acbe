"""Teaching and presenting tools: the demo, the attack lab, the capturing relay, the session page."""
