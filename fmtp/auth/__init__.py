"""
Who is who on this server: accounts and logins (twisted.cred), the live
sessions and the events routed to them, and the brakes on those who
guess, flood or hoard connections.
"""
