"""The SSH gateway: an OpenSSH sshd on the service host through which users reach builders with `ssh -J`.

Plain Python, no Django: `sshd` makes its files and runs it, `logins` reads the logins from its
log, `route` spells the commands and files a user needs. What the gateway lets through is decided
by the service from the leases (builders/services/gateway.py); builds read it through
builders/selectors.py.
"""
