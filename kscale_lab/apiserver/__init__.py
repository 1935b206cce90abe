"""kscale_lab.apiserver"""
