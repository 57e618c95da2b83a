import collections,sys
agg=collections.defaultdict(float)
for l in open(sys.argv[1]):
    f=l.strip().split(',')
    if len(f)<4 or not f[1].replace('.','').isdigit(): continue
    name=f[0].rsplit('-',1)[0]
    agg[(name,f[3].replace('syscalls:sys_enter_',''))]+=float(f[1])
n=float(sys.argv[2])
names=sorted(set(k[0] for k in agg))
evs=['task-clock','context-switches','futex','sched_yield','epoll_wait','recvfrom','read','write','writev']
print('%-22s'%'thread'+''.join('%12s'%e[:11] for e in evs))
for nm in names+['TOTAL']:
    vals=[]
    for e in evs:
        v=sum(agg.get((x,e),0) for x in names) if nm=='TOTAL' else agg.get((nm,e),0)
        if e=='task-clock': v*=1000
        vals.append(v/n)
    if any(vals): print('%-22s'%nm[:22]+''.join('%12.2f'%v for v in vals))
