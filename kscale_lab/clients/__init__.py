"""kscale_lab.clients"""
