"""How a decision becomes a branch, a PR, a tag or a revert: git, DVC, the forge,
proposal, promotion, rollback and the history read back from git.
"""
