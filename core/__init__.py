"""Billy: firmware for a talking Big Mouth Billy Bass."""
