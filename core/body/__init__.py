"""The fish's body: motors, motion and choreography, lip sync, the button and songs."""
