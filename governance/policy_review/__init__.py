"""policy_review"""
