"""Load-balancer recipes (HAProxy, nginx) and the tools that exercise them.

``make failover`` runs :mod:`deploy.failover`; ``make storm`` runs :mod:`deploy.storm`.
"""
