"""kscale_lab.labs"""
