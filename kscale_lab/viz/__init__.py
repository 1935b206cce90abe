"""kscale_lab.viz"""
