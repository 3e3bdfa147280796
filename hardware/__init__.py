"""Hardware: the node profiles' bills and wiring, the energy model, provisioning (users, ACL, keys), bundles
and flashing, firmware releases and their rollout."""
