"""Billy in the house: MQTT messages, discovery and bridge, the Home Assistant client."""
