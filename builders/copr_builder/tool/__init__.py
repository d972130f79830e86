"""copr-builder: your lease on this coprssh SSH builder. Python 3 standard library only.

The coprssh service installs this script on every builder it lends with SSH access, next to a lease
file (mode 0600) that it writes at deploy time: $COPRSSH_STATE_DIR/lease.json, or
/etc/coprssh/lease.json when that variable is not set. The file holds the lease token, which can do
nothing but show, prolong or release this one lease, through these calls:

    GET  {api_url}/api/v1/lease/           the lease as the service sees it now
    POST {api_url}/api/v1/lease/prolong/   {"hours": N}; 400 past the cap, naming the latest time
    POST {api_url}/api/v1/lease/release/   ends the lease now; ending it twice is harmless

each with the header "Authorization: LeaseToken <token>". The token is never printed.

Exit codes: 0 done, 1 refused (past the cap, lease ended or token not valid, not confirmed),
2 this machine's setup or the service is at fault (lease file, network, unexpected answer).

The service packs this package into one executable file (a zipapp: builders.copr_builder) and
installs it as /usr/local/bin/copr-builder; its modules import each other relatively, so they run
the same from the archive and from the service's tree.
"""
