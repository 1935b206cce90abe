"""kscale_lab.exercises"""
