"""kscale_lab.etcd"""
