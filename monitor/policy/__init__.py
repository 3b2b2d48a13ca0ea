"""The kcmp policy: rules of the rule file that stop calls in the kernel (see the README,
"Stopping calls")."""
