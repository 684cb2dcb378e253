"""Authorization: the Casbin enforcer over policies/, and the guard every API call passes."""
