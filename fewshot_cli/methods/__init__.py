"""Few-shot methods: one file each, all behind the FewShotMethod contract in base.py."""
