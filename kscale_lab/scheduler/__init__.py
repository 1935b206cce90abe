"""kscale_lab.scheduler"""
